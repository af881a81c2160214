"""The data lake: datasets as Apache Iceberg tables whose columns are the resolved XDM schema."""
