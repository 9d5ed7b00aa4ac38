"""Channel log engines: offsets, epochs, bounded history and fan-out (memory, later Redis)."""
