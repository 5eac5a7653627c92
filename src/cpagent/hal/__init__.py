"""Hardware abstraction: one interface per physical device kind, backends chosen by config."""
