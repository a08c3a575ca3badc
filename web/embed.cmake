# web/embed.cmake: writes OUT, a C file holding the page's FILES (a ;-list of paths) as byte arrays with their
# names and Content-Types (service/web_assets.h), so that qsnapd serves the page with no file to install or
# find. Run at build time: cmake -DOUT=... -DFILES=... -P embed.cmake
set(types_html "text/html; charset=utf-8")
set(types_js "text/javascript; charset=utf-8")
set(types_css "text/css; charset=utf-8")
set(types_svg "image/svg+xml")

set(arrays "")
set(table "")
set(i 0)
foreach(path IN LISTS FILES)
  get_filename_component(name ${path} NAME)
  string(REGEX MATCH "[^.]+$" ext "${name}")
  if(NOT DEFINED types_${ext})
    # a file served with a guessed type is what nosniff exists for: refuse to build instead
    message(FATAL_ERROR "web/embed.cmake: no Content-Type for '${name}' (add one for .${ext})")
  endif()
  file(READ ${path} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND arrays "static const unsigned char file${i}[] = {${bytes}};\n")
  string(APPEND table "    {\"${name}\", \"${types_${ext}}\", file${i}, sizeof(file${i})},\n")
  math(EXPR i "${i} + 1")
endforeach()
string(RANDOM LENGTH 8 tag)
file(WRITE ${OUT}.${tag}.tmp "/* generated from web/ by web/embed.cmake */\n#include \"web_assets.h\"\n\n${arrays}\n"
     "const struct svc_web_file svc_web_files[] = {\n${table}    {.name = NULL},\n};\n")
# renamed into place: a build stopped halfway leaves no half-written source behind
file(RENAME ${OUT}.${tag}.tmp ${OUT})
