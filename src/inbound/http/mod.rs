//! The OpenAI-compatible HTTP surface (poem-openapi).
