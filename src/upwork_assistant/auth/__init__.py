"""Sign-in flow, our sessions and JWTs."""
