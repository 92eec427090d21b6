# The installable libdtx, built from the objects of the in-tree SDK and the private modules it uses
# (util, runtime, http): the shared libdtx.so (SONAME libdtx.so.MAJOR.MINOR; -fvisibility=hidden, so
# only what include/dtx/ marks DTX_EXPORT is exported) and the static libdtx.a, plus the optional
# PostgreSQL part libdtx_pg (dtx/barrier_pg.h, dtx/xa_pg.h). Consumers see include/ only.
# packaging/ installs them and writes dtxConfig.cmake and dtx.pc.
#
# Whatever objects dtx_sdk gets, their external libraries must be in DTX_SDK_LIBS (CMakeLists.txt):
# the shared library is linked with --no-undefined, so a missing one fails the build, not a user.
set(DTX_SDK_PARTS dtx_sdk dtx_barrier_names dtx_http dtx_runtime dtx_util)
set(DTX_SDK_PG_PARTS dtx_sdk_pg dtx_barrier_names)

set(_dtx_objects)
foreach(part IN LISTS DTX_SDK_PARTS)
  if(TARGET ${part})  # dtx_runtime: only in trees that have src/runtime
    list(APPEND _dtx_objects $<TARGET_OBJECTS:${part}>)
    # Position-independent objects with hidden symbols, so that they can go into libdtx.so. For the
    # static server and tests that link these targets directly nothing changes but a few flags.
    set_target_properties(${part} PROPERTIES POSITION_INDEPENDENT_CODE ON
                          CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  endif()
endforeach()
set(_dtx_pg_objects)
foreach(part IN LISTS DTX_SDK_PG_PARTS)
  list(APPEND _dtx_pg_objects $<TARGET_OBJECTS:${part}>)
  set_target_properties(${part} PROPERTIES POSITION_INDEPENDENT_CODE ON
                        CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
endforeach()

# Before anything uses CMAKE_INSTALL_INCLUDEDIR: on a fresh configure it is only set from here on.
include(GNUInstallDirs)
set(DTX_SOVERSION "${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR}")
set(_dtx_public_includes $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
                         $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)

# dtx_add_library(target OUTPUT name KIND SHARED|STATIC EXPORT name OBJECTS ...)
function(dtx_add_library target)
  cmake_parse_arguments(L "" "OUTPUT;KIND;EXPORT" "OBJECTS" ${ARGN})
  add_library(${target} ${L_KIND} ${L_OBJECTS})
  set_target_properties(${target} PROPERTIES OUTPUT_NAME ${L_OUTPUT} EXPORT_NAME ${L_EXPORT}
                        LINKER_LANGUAGE CXX)
  target_include_directories(${target} INTERFACE ${_dtx_public_includes})
  target_compile_features(${target} INTERFACE cxx_std_20)
  if(L_KIND STREQUAL "SHARED")
    set_target_properties(${target} PROPERTIES VERSION ${PROJECT_VERSION} SOVERSION ${DTX_SOVERSION})
    target_link_options(${target} PRIVATE LINKER:--no-undefined
                        LINKER:--version-script=${PROJECT_SOURCE_DIR}/src/sdk/libdtx.map)
    set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS ${PROJECT_SOURCE_DIR}/src/sdk/libdtx.map)
  endif()
endfunction()

dtx_add_library(dtx_lib_shared KIND SHARED OUTPUT dtx EXPORT dtx OBJECTS ${_dtx_objects})
target_link_libraries(dtx_lib_shared PRIVATE ${DTX_SDK_LIBS})
dtx_add_library(dtx_lib_static KIND STATIC OUTPUT dtx EXPORT dtx_static OBJECTS ${_dtx_objects})
foreach(lib IN LISTS DTX_SDK_LIBS)
  target_link_libraries(dtx_lib_static INTERFACE $<LINK_ONLY:${lib}>)
endforeach()

dtx_add_library(dtx_pg_shared KIND SHARED OUTPUT dtx_pg EXPORT pg OBJECTS ${_dtx_pg_objects})
target_link_libraries(dtx_pg_shared PUBLIC dtx_lib_shared PRIVATE ${DTX_SDK_PG_LIBS})
dtx_add_library(dtx_pg_static KIND STATIC OUTPUT dtx_pg EXPORT pg_static OBJECTS ${_dtx_pg_objects})
target_link_libraries(dtx_pg_static INTERFACE dtx_lib_static)
foreach(lib IN LISTS DTX_SDK_PG_LIBS)
  target_link_libraries(dtx_pg_static INTERFACE $<LINK_ONLY:${lib}>)
endforeach()

# packaging/ (the pkg-config files, the package names) needs these too.
set(DTX_SDK_LIBS ${DTX_SDK_LIBS} PARENT_SCOPE)
set(DTX_SDK_PG_LIBS ${DTX_SDK_PG_LIBS} PARENT_SCOPE)
set(DTX_SOVERSION ${DTX_SOVERSION} PARENT_SCOPE)
set(_dtx_public_includes ${_dtx_public_includes} PARENT_SCOPE)  # dtx_add_library in src/brokers
