"""The pure heart of syncd: the domain's values, its one error tree, and its decisions.

Everything else may import this package; it imports nothing of the rest of syncd and no
library that does I/O. Each rule takes the instant it is evaluated at (``now``) as an
argument, so it can be tested at any instant without a clock.

- `errors`: the error tree, by who must act.
- `time`: instants, zones and durations.
- `ooo`: what an OOO period says (`OooContent`), with its fingerprint.
- `calendars`: what a calendar says as the engine sees it (`RemoteEvent`, `ChangeSet`, ...).
- `hours`: working hours.
- `daysoff`: public holidays and company days off.
- `options`: how a provider or sink declares its config options.
- `availability`: the Available / Away rules.
- `timeline`: a user's status over a span, as intervals, by those rules.
- `businesstime`: the business-hours clock of a team's schedule.
- `reconcile`: the three-way merge of one calendar link, as a plan of actions.
- `rotation`: who of a rotation's members takes the next assignment.
- `events`: the status event as it goes out to every sink, and its JSON Schema.
"""
