"""The I/O below the wire layer: a thread per connection for step-by-step keywords
(``threaded``), one event loop for fan-out (``fanout``), and the embedded backend's
child process (``process``). Each feeds :class:`agentkit.wire.session.AgentSession`."""
