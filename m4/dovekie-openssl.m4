# DOVEKIE_CHECK_OPENSSL: libcrypto with EVP SHA-256; sets OPENSSL_CFLAGS, OPENSSL_LIBS.
AC_DEFUN([DOVEKIE_CHECK_OPENSSL], [
  PKG_CHECK_MODULES([OPENSSL], [libcrypto >= 1.1])
  save_CFLAGS="$CFLAGS"; save_LIBS="$LIBS"
  CFLAGS="$CFLAGS $OPENSSL_CFLAGS"; LIBS="$LIBS $OPENSSL_LIBS"
  AC_MSG_CHECKING([for EVP_sha256])
  AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <openssl/evp.h>]],
      [[return EVP_sha256() == NULL;]])],
    [AC_MSG_RESULT([yes])],
    [AC_MSG_RESULT([no]); AC_MSG_ERROR([libcrypto lacks EVP_sha256])])
  CFLAGS="$save_CFLAGS"; LIBS="$save_LIBS"
])
