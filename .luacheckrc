std = "max"
codes = true
max_line_length = 110
exclude_files = { "build/**", ".tmp/**" }
files["spec/**"] = { std = "+busted" }
files["bench/**"] = { globals = {} }
