{
  "targets": [
    {
      "target_name": "pillion_native",
      "sources": ["memory.cc"],
      "cflags_cc": ["-O2", "-Wno-cast-function-type"]
    }
  ]
}
