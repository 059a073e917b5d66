# Writes embedshim.pc for the Go binding (#cgo pkg-config: embedshim), run
# after every build of the library (cmake -P, see CMakeLists.txt). Its Cflags
# carry the library's content hash: cmd/go hashes pkg-config's output, not
# the library file, and go/exitmon embeds the hash in its object, so a
# changed library relinks the Go binaries.
file(SHA256 "${LIB}" hash)
string(SUBSTRING "${hash}" 0 32 hash)
set(content "Name: embedshim
Description: embedshim exit-tracking core (static, with libbpf, libelf, libz)
Version: 0
Cflags: -I${INCLUDE} -DEMBEDSHIM_CORE_HASH=${hash}
Libs: ${LIB} ${LIBS} -lpthread
")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL content)
  file(WRITE "${OUT}" "${content}")
endif()
