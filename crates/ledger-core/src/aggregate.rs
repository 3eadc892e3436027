//! Windowed spend aggregation.
