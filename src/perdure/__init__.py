"""perdure: durable orchestrations for Python."""
