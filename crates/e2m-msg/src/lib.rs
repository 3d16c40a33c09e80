//! e2m-msg: under construction (see the workspace issues).
