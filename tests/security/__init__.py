"""What syncd promises against hostile callers, calendars and networks (SECURITY.md): one test
module per area, each test failing on the code before the promise was kept."""
