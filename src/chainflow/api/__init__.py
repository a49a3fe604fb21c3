"""HTTP edge: parse, authorize, call one service, render."""
