"""In-process fakes of external services, spoken to over real HTTP on 127.0.0.1."""
