"""Server side: accepts cameras, stores their compressed frames, feeds recorders and live views."""
