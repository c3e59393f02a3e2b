# Reference renderer for the conformance test: plain ruby ERB over the same
# context JSON, with a minimal independent p/if_p/link/spec written from the
# director's documented contract (not from renderer.rb).
#   ruby reference.rb CONTEXT.json TEMPLATE.erb > output
require 'erb'
require 'json'
require 'yaml'
require 'ostruct'
require 'cgi'
require 'ipaddr'
require 'openssl'
require 'zlib'
require 'base64'
require 'stringio'
require 'digest'
require 'shellwords'

def to_os(v)
  case v
  when Hash then OpenStruct.new(v.transform_values { |x| to_os(x) })
  when Array then v.map { |x| to_os(x) }
  else v
  end
end

class Else
  def initialize(ctx, active) = (@ctx, @active = ctx, active)
  def else = (@active ? yield : nil)
  def else_if_p(*n, &b) = (@active ? @ctx.if_p(*n, &b) : Else.new(@ctx, false))
  def else_if_link(n, &b) = (@active ? @ctx.if_link(n, &b) : Else.new(@ctx, false))
end

module Props
  def dig_prop(h, name) = name.split('.').reduce(h) { |a, k| a.nil? ? nil : a[k] }
  def p(names, *default)
    Array(names).each { |n| v = dig_prop(@props, n); return v unless v.nil? }
    return default[0] unless default.empty?
    raise "Can't find property '#{Array(names)}'"
  end
  def if_p(*names)
    vals = names.map { |n| dig_prop(@props, n) }
    return Else.new(self, true) if vals.any?(&:nil?)
    yield(*vals)
    Else.new(self, false)
  end
end

class RefLinkInstance
  include Props
  attr_reader :name, :index, :id, :az, :address, :bootstrap
  def initialize(h, props)
    @name, @index, @id, @az, @address, @bootstrap = h.values_at('name', 'index', 'id', 'az', 'address', 'bootstrap')
    @props = props
  end
end

class RefLink
  include Props
  attr_reader :instances
  def initialize(h)
    @props = h['properties'] || {}
    @address = h['address']
    @instances = h['instances'].map { |i| RefLinkInstance.new(i, @props) }
  end
  def properties = @props
  def address(_criteria = {}) = @address
end

class RefContext
  include Props
  attr_reader :spec
  def initialize(spec)
    @props = spec['properties']
    @links = spec['links'] || {}
    @spec = to_os(spec)
  end
  def properties = to_os(@props)
  def link(n) = RefLink.new(@links.fetch(n))
  def if_link(n)
    return Else.new(self, true) unless @links.key?(n)
    yield link(n)
    Else.new(self, false)
  end
  def get_binding = binding
end

spec = JSON.parse(File.read(ARGV[0]), allow_nan: true)
erb = ERB.new(File.read(ARGV[1]), trim_mode: '-')
erb.filename = File.basename(ARGV[1])
$stdout.write(erb.result(RefContext.new(spec).get_binding))
