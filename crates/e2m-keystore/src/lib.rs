//! e2m-keystore: under construction (see the workspace issues).
