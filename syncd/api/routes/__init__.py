"""One router per resource: operations, users and teams, status, OOO blocks, rotations,
calendar links, push hooks, and the published schemas."""
