"""The built-in projections, each a pure fold: running order, class poles, championship."""
