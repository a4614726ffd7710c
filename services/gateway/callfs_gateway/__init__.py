"""CallFS gateway role."""
