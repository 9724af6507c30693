"""Small shared pieces every room may use; they import no other room."""
