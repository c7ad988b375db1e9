# DOVEKIE_CHECK_SQLITE: SQLite 3 built with FTS5; sets SQLITE_CFLAGS, SQLITE_LIBS.
AC_DEFUN([DOVEKIE_CHECK_SQLITE], [
  PKG_CHECK_MODULES([SQLITE], [sqlite3 >= 3.34])
  save_CFLAGS="$CFLAGS"; save_LIBS="$LIBS"
  CFLAGS="$CFLAGS $SQLITE_CFLAGS"; LIBS="$LIBS $SQLITE_LIBS"
  AC_MSG_CHECKING([whether SQLite has FTS5])
  AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <sqlite3.h>]],
      [[return !sqlite3_compileoption_used("ENABLE_FTS5");]])],
    [AC_MSG_RESULT([linked])],
    [AC_MSG_RESULT([no]); AC_MSG_ERROR([SQLite 3 is not usable])])
  CFLAGS="$save_CFLAGS"; LIBS="$save_LIBS"
])
