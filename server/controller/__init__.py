"""The online γ controller: per scheduling step (and per request) draft lengths from the
roofline model, live acceptance estimates and measured step times."""
