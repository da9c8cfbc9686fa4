//! The composition root as a library: builds adapters from settings and runs the server.
