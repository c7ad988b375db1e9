# DOVEKIE_CHECK_LIBCLAMAV: libclamav with cl_engine_new; sets CLAMAV_CFLAGS, CLAMAV_LIBS.
AC_DEFUN([DOVEKIE_CHECK_LIBCLAMAV], [
  PKG_CHECK_MODULES([CLAMAV], [libclamav])
  save_CFLAGS="$CFLAGS"; save_LIBS="$LIBS"
  CFLAGS="$CFLAGS $CLAMAV_CFLAGS"; LIBS="$LIBS $CLAMAV_LIBS"
  AC_MSG_CHECKING([for cl_engine_new])
  AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <clamav.h>]],
      [[struct cl_engine *e = cl_engine_new(); return e == NULL;]])],
    [AC_MSG_RESULT([yes])],
    [AC_MSG_RESULT([no]); AC_MSG_ERROR([libclamav is not usable])])
  CFLAGS="$save_CFLAGS"; LIBS="$save_LIBS"
])
