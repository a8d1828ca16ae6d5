"""What the simulator and the runtime share, free of torch: the request lifecycle, the
batching policy, the one metrics function, a plan as executors, routing with admission
control, what the server observes of its arrivals, and the re-planning rules."""
