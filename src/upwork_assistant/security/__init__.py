"""Key ring and encryption, audit log, security headers, CSRF."""
