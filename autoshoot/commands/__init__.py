"""One module per CLI sub-command. Each parses options and calls the library."""
