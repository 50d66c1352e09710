"""What travels on the wire, with no I/O: the event model, dialects, the connection
spec, masking, and the sans-I/O agent session both transports feed."""
