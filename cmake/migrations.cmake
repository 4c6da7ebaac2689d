# Embed migrations/NNNN_name.{up,down}.sql into the binary as a C table
# (build output, not committed). scripts/embed-migrations.py validates the
# numbering and computes each migration's SHA-256 checksum.
file(GLOB ZNP_MIGRATION_FILES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/migrations/*.sql)
set(ZNP_MIGRATIONS_C ${CMAKE_CURRENT_BINARY_DIR}/migrations.gen.c)
add_custom_command(
    OUTPUT ${ZNP_MIGRATIONS_C}
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/scripts/embed-migrations.py
            ${CMAKE_CURRENT_SOURCE_DIR}/migrations ${ZNP_MIGRATIONS_C}
    DEPENDS ${ZNP_MIGRATION_FILES} ${CMAKE_CURRENT_SOURCE_DIR}/scripts/embed-migrations.py
    COMMENT "embedding SQL migrations"
    VERBATIM)
