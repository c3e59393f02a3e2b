-- Roles and databases from the manifest; run by post-start after every start.
{{- range (p "postgres.roles") }}
SELECT format('CREATE ROLE %I LOGIN', '{{ .name }}') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{{ .name }}')\gexec
ALTER ROLE "{{ .name }}" WITH LOGIN PASSWORD '{{ .password }}';
{{- end }}
{{- range (p "postgres.databases") }}
SELECT format('CREATE DATABASE %I OWNER %I', '{{ .name }}', '{{ .owner }}') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{{ .name }}')\gexec
{{- end }}
