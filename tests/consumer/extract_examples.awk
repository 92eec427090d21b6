# Writes each `/// @code ... /// @endcode` block of a dtx header into OUT/<header>_<n>.cc as the body
# of a function `void dtx_example_<header>_<n>()` (its `/// #include` lines go above it), so that the
# consumer test compiles and links every usage example the headers show (docs/packaging.md).
# Usage: awk -v out=DIR -f extract_examples.awk include/dtx/*.h
FNR == 1 { name = FILENAME; sub(/.*\//, "", name); sub(/\.h$/, "", name); n = 0 }
/^[ \t]*\/\/\/ @code/ { in_code = 1; n++; includes = ""; body = ""; next }
/^[ \t]*\/\/\/ @endcode/ {
  in_code = 0
  file = out "/" name "_" n ".cc"
  printf "// Generated from dtx/%s.h (example %d) by extract_examples.awk.\n", name, n > file
  printf "#include <dtx/%s.h>\n\n#include <chrono>\n#include <string>\n%s\n", name, includes > file
  printf "void dtx_example_%s_%d();\nvoid dtx_example_%s_%d() {\n%s}\n", name, n, name, n, body > file
  close(file)
  next
}
in_code {
  line = $0
  sub(/^[ \t]*\/\/\/ ?/, "", line)
  if (line ~ /^#include/) includes = includes line "\n"; else body = body line "\n"
}
