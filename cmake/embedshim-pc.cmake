# Writes embedshim.pc for the Go binding (#cgo pkg-config: embedshim) and
# embedshim.hash, the library's content hash, after every build of the
# library (cmake -P, see CMakeLists.txt). cmd/go hashes neither pkg-config's
# output nor the library into its cache keys, only the CGO_* variables: the
# Makefile puts this hash into CGO_CFLAGS and go/exitmon embeds it in its
# object, so a changed library rebuilds go/exitmon and relinks the binaries.
file(SHA256 "${LIB}" hash)
string(SUBSTRING "${hash}" 0 32 hash)
set(pc "Name: embedshim
Description: embedshim exit-tracking core (static, with libbpf, libelf, libz)
Version: 0
Cflags: -I${INCLUDE}
Libs: ${LIB} ${LIBS} -lpthread
")
foreach(f pc hash)
  set(new "${${f}}")
  set(old "")
  if(EXISTS "${OUT}.${f}")
    file(READ "${OUT}.${f}" old)
  endif()
  if(NOT old STREQUAL new)
    file(WRITE "${OUT}.${f}" "${new}")
  endif()
endforeach()
