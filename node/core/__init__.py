"""Sans-IO core: pure classes, time passed in, no trio, no sockets."""
