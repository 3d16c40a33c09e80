//! e2m-emks: under construction (see the workspace issues).
