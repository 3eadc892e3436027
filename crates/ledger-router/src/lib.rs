//! Client-side budget signal consumer and routing decision.
