"""The scaled-down study: its design per scale, and the sweep that trains and evaluates it."""
