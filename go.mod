module github.com/leadlex/leadlex-etl

go 1.26

require github.com/spf13/pflag v1.1.0 // indirect
