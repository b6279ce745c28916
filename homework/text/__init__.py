"""Text handling: units and their spellings (from pint), the prompt builder, answer formats and parsing,
tokenization of a training row. Imports only runtime/ and the contract kit's constants.
"""
