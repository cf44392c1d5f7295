"""Small, deterministic experiments that make a lecture point visible (logic here, CLI in cnnlab.cli)."""
