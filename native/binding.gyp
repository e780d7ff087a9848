{
  "targets": [
    {
      "target_name": "umirror_native",
      "sources": ["umirror-native.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
