"""The data layer: report parsing (reports), tokens and vocabulary (text), the image pipeline (images), the
datasets and their protocol splits (datasets), and the procedural thorax that renders `phantom` (phantom)."""
