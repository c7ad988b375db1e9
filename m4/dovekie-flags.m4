# DOVEKIE_SANITIZERS: --enable-asan / --enable-ubsan add the sanitizer flags
# to CFLAGS and LDFLAGS for every target.
AC_DEFUN([DOVEKIE_SANITIZERS], [
  AC_ARG_ENABLE([asan],
    [AS_HELP_STRING([--enable-asan], [build with AddressSanitizer])],
    [], [enable_asan=no])
  AC_ARG_ENABLE([ubsan],
    [AS_HELP_STRING([--enable-ubsan], [build with UndefinedBehaviorSanitizer])],
    [], [enable_ubsan=no])
  SANITIZER_FLAGS=""
  AS_IF([test "x$enable_asan" = xyes],
    [SANITIZER_FLAGS="$SANITIZER_FLAGS -fsanitize=address -fno-omit-frame-pointer"])
  AS_IF([test "x$enable_ubsan" = xyes],
    [SANITIZER_FLAGS="$SANITIZER_FLAGS -fsanitize=undefined -fno-sanitize-recover=undefined"])
  AC_SUBST([SANITIZER_FLAGS])
  AM_CONDITIONAL([DOVEKIE_SANITIZED], [test -n "$SANITIZER_FLAGS"])
])

# DOVEKIE_WARNINGS: warnings on; --enable-werror turns them into errors (CI).
AC_DEFUN([DOVEKIE_WARNINGS], [
  AC_ARG_ENABLE([werror],
    [AS_HELP_STRING([--enable-werror], [treat compiler warnings as errors])],
    [], [enable_werror=no])
  WARN_CFLAGS="-Wall -Wextra -Wformat=2 -Wmissing-prototypes -Wmissing-declarations -Wpointer-arith -Wshadow=local"
  AS_IF([test "x$enable_werror" = xyes], [WARN_CFLAGS="$WARN_CFLAGS -Werror"])
  AC_SUBST([WARN_CFLAGS])
])

# DOVEKIE_LIBFUZZER: --enable-libfuzzer builds the fuzz targets in tests/fuzz
# as libFuzzer binaries (needs CC=clang); they define no main() then.
AC_DEFUN([DOVEKIE_LIBFUZZER], [
  AC_ARG_ENABLE([libfuzzer],
    [AS_HELP_STRING([--enable-libfuzzer], [build tests/fuzz targets for libFuzzer (CC=clang)])],
    [], [enable_libfuzzer=no])
  FUZZ_CFLAGS=""
  FUZZ_LDFLAGS=""
  AS_IF([test "x$enable_libfuzzer" = xyes], [
    dnl Coverage feedback for all our code; libFuzzer's main() only in
    dnl the fuzz programs.
    CFLAGS="$CFLAGS -fsanitize=fuzzer-no-link"
    FUZZ_CFLAGS="-DDOVEKIE_LIBFUZZER"
    FUZZ_LDFLAGS="-fsanitize=fuzzer"
  ])
  AC_SUBST([FUZZ_CFLAGS])
  AC_SUBST([FUZZ_LDFLAGS])
  AM_CONDITIONAL([DOVEKIE_LIBFUZZER], [test "x$enable_libfuzzer" = xyes])
])
