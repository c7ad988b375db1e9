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
