//! Dead letters on HERALD_DEAD: list, show, replay and purge them.
