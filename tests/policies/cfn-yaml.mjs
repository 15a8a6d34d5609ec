// Reads a CloudFormation YAML template: the short-form intrinsic functions (!Ref, !Sub, !GetAtt, …) become
// their long form ({"Ref": …}, {"Fn::Sub": …}, {"Fn::GetAtt": [..]}), as CloudFormation reads them.
import yaml from 'js-yaml'

const functions = ['Ref', 'Sub', 'GetAtt', 'If', 'Join', 'Select', 'Split', 'Equals', 'Not', 'And', 'Or', 'Condition', 'FindInMap', 'Base64', 'ImportValue', 'GetAZs', 'Cidr']
const types = functions.flatMap((name) => ['scalar', 'sequence', 'mapping'].map((kind) => new yaml.Type(`!${name}`, {
  kind,
  construct: (data) => {
    if (name === 'Ref' || name === 'Condition') return { [name]: data }
    if (name === 'GetAtt' && typeof data === 'string') return { 'Fn::GetAtt': data.split('.') }
    return { [`Fn::${name}`]: data }
  }
})))
const schema = yaml.DEFAULT_SCHEMA.extend(types)

export function parse(text) {
  return yaml.load(text, { schema })
}
