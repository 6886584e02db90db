//! truce-agent
