"""Domain: enums, value objects, errors and rules. Imports nothing else of suanli."""
