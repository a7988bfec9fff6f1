"""syncd: keeps agents' out-of-office blocks in step with their calendars and publishes
Available / Away to the helpdesk's assignment engine."""

__version__ = "0.1.0"
