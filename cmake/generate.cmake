# The generator: spec/ + codegen/ -> generated/ (committed) and the API docs.
# The build reruns it when the spec or the generator changes; the output is
# deterministic, so a fresh clone regenerates byte-identical files.

file(GLOB_RECURSE ZNP_SPEC_FILES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/spec/*)
file(GLOB_RECURSE ZNP_CODEGEN_FILES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/codegen/*.py
     ${CMAKE_CURRENT_SOURCE_DIR}/codegen/templates/*.j2)

set(ZNP_GEN_API_SOURCES
    ${ZNP_GEN_DIR}/schemas.gen.c
    ${ZNP_GEN_DIR}/routes.gen.c
    ${ZNP_GEN_DIR}/grpc_methods.gen.c
    ${ZNP_GEN_DIR}/openapi.gen.c
    ${ZNP_GEN_DIR}/proto/grpc/health/v1/health.pb-c.c
    ${ZNP_GEN_DIR}/proto/znp/v1/znp.pb-c.c
    ${ZNP_GEN_DIR}/proto/znp/kernel/v1/kernel.pb-c.c)
set(ZNP_GEN_OUTPUTS
    ${ZNP_GEN_API_SOURCES}
    ${ZNP_GEN_DIR}/errors.gen.h
    ${ZNP_GEN_DIR}/errors.gen.c
    ${ZNP_GEN_DIR}/schemas.gen.h
    ${ZNP_GEN_DIR}/operations.gen.h
    ${ZNP_GEN_DIR}/grpc_methods.gen.h
    ${ZNP_GEN_DIR}/openapi.gen.h
    ${ZNP_GEN_DIR}/openapi.json
    ${ZNP_GEN_DIR}/proto/grpc/health/v1/health.pb-c.h
    ${ZNP_GEN_DIR}/proto/znp/v1/znp.pb-c.h
    ${ZNP_GEN_DIR}/proto/znp/kernel/v1/kernel.pb-c.h)

# The generator leaves files whose bytes did not change untouched, so a stamp
# records the last run; the outputs are byproducts.
add_custom_command(
    OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/codegen.stamp
    BYPRODUCTS ${ZNP_GEN_OUTPUTS}
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/codegen/generate.py
            --root ${CMAKE_CURRENT_SOURCE_DIR} --protoc-c ${PROTOC_C}
    COMMAND ${CMAKE_COMMAND} -E touch ${CMAKE_CURRENT_BINARY_DIR}/codegen.stamp
    DEPENDS ${ZNP_SPEC_FILES} ${ZNP_CODEGEN_FILES}
    COMMENT "codegen: spec/ -> generated/"
    VERBATIM)
add_custom_target(znp_generated DEPENDS ${CMAKE_CURRENT_BINARY_DIR}/codegen.stamp)

# `cmake --build build --target generate` rewrites generated/ unconditionally.
add_custom_target(generate
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/codegen/generate.py
            --root ${CMAKE_CURRENT_SOURCE_DIR} --protoc-c ${PROTOC_C}
    COMMENT "codegen: spec/ -> generated/ (forced)"
    VERBATIM)
