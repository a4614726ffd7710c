"""CallFS link-service role."""
